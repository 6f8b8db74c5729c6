# micropython-lib style manifest: lets a firmware build freeze modbus_rtu into
# flash (include("$(PORT_DIR)/boards/manifest.py"); include("<repo>/micro")),
# which saves RAM compared with importing the .py from the filesystem.
# Tests are deliberately not listed: they stay off the device image.
metadata(description="Modbus RTU framing (FC03/FC04, CRC16, register decoders) for nengtan meter nodes.", version="0.1.0")

module("modbus_rtu.py")
