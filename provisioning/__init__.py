"""The technician's library: create a gateway identity and config, enroll it with a receiver.

Every function here is what a `nengtan provision …` verb calls; the CLI only parses and prints.
"""

from provisioning.identity import (
    Enrollment,
    InitResult,
    enrollment_for,
    init_gateway,
    write_enrollment,
)

__all__ = ["Enrollment", "InitResult", "enrollment_for", "init_gateway", "write_enrollment"]
