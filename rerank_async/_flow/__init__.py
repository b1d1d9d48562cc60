"""Flow control: what a request must pass before it is sent, and what its answer teaches.

One entry point, ``Admission`` (``admission.py``); the policies it combines are its
leaves, each with no I/O of its own and a clock that tests inject:

    adaptive.py        AdaptiveLimit, the AIMD state machine for requests in flight
    limiter.py         FairLimiter: free slots round-robin across calls
    rate_limiter.py    RateLimiter, a cost-weighted token bucket
    retry_budget.py    RetryBudget, retries as a share of requests plus a floor
    shared_pause.py    SharedPause, the client-wide "send nothing before" time
    latency_window.py  the rolling quantile that ``hedge_after="auto"`` hedges at
    endpoint_model.py  EndpointModel: latency by request size, the tail, the capacity
    width.py           choose_width: a call's number of requests, from that model
    outage.py          OutageGate: requests held while the endpoint is down, one probe
    first_wave.py      FirstWave: a new client's first burst, paced until it is answered
    settings.py        LoadSettings and AdmissionStatistics, plain records
    clock.py           EventLoopClock
"""

from .admission import Admission
from .endpoint_model import EndpointEstimate
from .settings import AdmissionStatistics, LoadSettings
from .width import choose_width

__all__ = ["Admission", "AdmissionStatistics", "EndpointEstimate", "LoadSettings", "choose_width"]
