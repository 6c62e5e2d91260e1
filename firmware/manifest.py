# micropython-lib style manifest: freeze the evaluator firmware (and the shared protocol) into the
# board image, so their bytecode runs from flash instead of taking heap.
# Use: include("$(MPY_DIR)/../hall/firmware/manifest.py") from the board's manifest.
# mpy_check: compile-only
metadata(description="Hall rating evaluator firmware (five_button and touch boards)", version="1.0.0")
require("asyncio")
package("protocol", base_path="..", opt=3)
package("firmware", base_path="..", opt=3)
