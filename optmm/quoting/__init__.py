"""Fair value, the options quoter, the toxicity detector and the delta hedger."""

from optmm.quoting.fair_value import (
    FairUnderlying,
    FairValueConfig,
    decay_flow,
    fair_underlying,
    option_fair_values,
)
from optmm.quoting.hedger import (
    DeltaHedger,
    HedgeFill,
    HedgeMode,
    HedgeOrder,
    HedgerConfig,
    HedgeReason,
    HedgeReport,
    HedgeTarget,
    ww_band_shares,
)
from optmm.quoting.quoter import BookGreeks, QuoteInput, Quoter, QuoterConfig, SkewMode
from optmm.quoting.toxicity import ToxicityConfig, ToxicityDetector, ToxicityScore

__all__ = [
    "BookGreeks",
    "DeltaHedger",
    "FairUnderlying",
    "FairValueConfig",
    "HedgeFill",
    "HedgeMode",
    "HedgeOrder",
    "HedgeReason",
    "HedgeReport",
    "HedgeTarget",
    "HedgerConfig",
    "QuoteInput",
    "Quoter",
    "QuoterConfig",
    "SkewMode",
    "ToxicityConfig",
    "ToxicityDetector",
    "ToxicityScore",
    "decay_flow",
    "fair_underlying",
    "option_fair_values",
    "ww_band_shares",
]
