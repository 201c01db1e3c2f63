# keyhole run: loaded by the interpreter at start-up because the CLI put this directory first on
# PYTHONPATH. It puts the environment back exactly as the program would have had it (before anything
# else, so even a failure below leaves no trace), starts the agent, then hands over to the program's
# own sitecustomize, if any.
def _keyhole_bootstrap() -> None:
    import importlib
    import os
    import sys

    spec = os.environ.pop("KEYHOLE_RUN_SPEC", None)
    bootstrap = os.environ.pop("KEYHOLE_RUN_BOOTSTRAP", None)
    if "KEYHOLE_RUN_PYTHONPATH" in os.environ:
        os.environ["PYTHONPATH"] = os.environ.pop("KEYHOLE_RUN_PYTHONPATH")
    elif spec is not None:
        os.environ.pop("PYTHONPATH", None)
    if bootstrap:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != bootstrap]
    if spec:
        try:
            from keyhole.agent.bootstrap.local_run import start_from_spec

            start_from_spec(spec)
        except Exception:  # the program must run exactly as it would without keyhole
            pass
    # The bootstrap directory has left sys.path: importing again finds the program's own module.
    ours = sys.modules.pop("sitecustomize", None)
    try:
        importlib.import_module("sitecustomize")
    except ImportError:
        if ours is not None:
            sys.modules["sitecustomize"] = ours


_keyhole_bootstrap()
