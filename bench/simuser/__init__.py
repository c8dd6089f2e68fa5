"""The simulated person of the simulated-user benchmark (bench/simulated_user.py).

* ``policy``  — what the person does at a fork, given the phrase they want (pure);
* ``costs``   — what each action costs in time per input modality, and the metrics (pure);
* ``driver``  — drives the real daemon over the bus with that policy and logs every step;
* ``report``  — the table, the plots and the JSON results.

See docs/simulated_user.md.
"""
