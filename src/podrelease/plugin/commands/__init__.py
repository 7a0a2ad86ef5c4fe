"""doit commands that podrelease adds through the `doit.COMMAND` entry point, one per module.

`doit verify`, `doit new`, `doit promote`, `doit cleanup` and
`doit volume-create` work in any release root once podrelease is installed.
They find the release root as the task loader does (`plugin.root`) but never
load tasks: loading stops at the first broken build file or instruction,
while verify must report every problem, and the authoring commands must not
build or release anything.

These modules are only glue: options, arguments and one-line errors. What
the commands do lives in `podrelease.verify` and `podrelease.manage`.
"""

from .cleanup import Cleanup
from .doit_commands import Clean, Forget, Help, Ignore, Info, ResetDep, Run, Strace
from .init import Init
from .listing import List
from .new import New
from .promote import Promote
from .status import Status
from .verify import Verify
from .volume_create import VolumeCreate

__all__ = ["Clean", "Forget", "Ignore", "ResetDep", "Run", "Strace", "Cleanup", "Help", "Info", "Init", "List", "New", "Promote", "Status", "Verify", "VolumeCreate"]
