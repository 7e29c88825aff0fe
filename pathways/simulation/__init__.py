"""What-if simulation of a contract on the real engine (no Temporal).

A scenario (`scenario.py`) names a pathway definition, arrivals, how each provider behaves
(`distributions.py`) and changes to compare. `loop.py` advances simulated time with a heap and
drives the production `PathwayRun` (begin, provider commands, ladder ticks), so clocks, ladders,
broker and conditions are exactly those that run in production; providers queue handovers when
at capacity (`providers.py`). `metrics.py` measures one replication and summarises many with
95% confidence intervals; `runner.py` runs replications in processes with independent random
streams; `fit.py` fits provider behaviour from the event log and validates the simulator
against history. Imports only `pathways`.
"""

from pathways.simulation.runner import compare, run_variant
from pathways.simulation.scenario import Scenario, load_scenario

__all__ = ["Scenario", "compare", "load_scenario", "run_variant"]
