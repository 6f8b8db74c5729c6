"""`python -m nengtan …` is the same as the `nengtan` command."""

from nengtan.cli import main

main()
