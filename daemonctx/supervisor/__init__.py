"""The supervisor: keep many programs running (work in progress, see the issue
"A supervisor that keeps programs running").

Built so far, each a pure module with fast unit tests, on which the event loop,
the control server and client, and ``daemonctx supervise``/``ctl`` will stand:

- ``config``: the TOML file and the ``Program`` model, every key declared once;
- ``state``: one program's state machine (backoff, start limits, stop ladder),
  events in and actions out, no I/O, the clock passed in;
- ``protocol``: the control socket's versioned JSON-lines protocol;
- ``spawn``: starting one program (its own session, PDEATHSIG after the
  credential change, exec errors with their errno) and signalling its group.
"""
