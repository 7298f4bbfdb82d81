"""Combinators: generative functions made from generative functions."""

from ppl.combinators._scan import Scan as Scan
from ppl.combinators._scan import ScanTrace as ScanTrace
from ppl.combinators._switch import Cond as Cond
from ppl.combinators._switch import Mixture as Mixture
from ppl.combinators._switch import Switch as Switch
from ppl.combinators._switch import SwitchTrace as SwitchTrace
from ppl.combinators._vmap import Vmap as Vmap
from ppl.combinators._vmap import VmapTrace as VmapTrace
