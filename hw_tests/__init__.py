"""Hardware-in-the-loop tests and the emulated RS-485 bus they (and ``nengtan demo``) run against."""
