# keyhole run: loaded by the interpreter at start-up because the CLI put this directory first on
# PYTHONPATH. It starts the agent, then hands over to the program's own sitecustomize, if any.
def _keyhole_bootstrap() -> None:
    import importlib
    import sys

    try:
        from keyhole.agent.local_run import start_from_environment

        start_from_environment()
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
