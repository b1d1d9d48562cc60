"""Flow control: what a request must pass before it is sent, and what its answer teaches.

One entry point, ``Admission`` (``admission.py``); the policies it combines are its
leaves, each with no I/O of its own and a clock that tests inject:

    adaptive.py        AdaptiveLimit, the AIMD state machine for requests in flight
    limiter.py         FairLimiter: free slots round-robin across calls
    rate_limiter.py    RateLimiter, a cost-weighted token bucket
    retry_budget.py    RetryBudget, retries as a share of requests plus a floor
    shared_pause.py    SharedPause, the client-wide "send nothing before" time
    latency_window.py  the rolling quantile that ``hedge_after="auto"`` hedges at
"""

from .admission import Admission, AdmissionStatistics, LoadSettings

__all__ = ["Admission", "AdmissionStatistics", "LoadSettings"]
