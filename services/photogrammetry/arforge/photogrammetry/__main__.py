"""``python -m arforge.photogrammetry``: the photogrammetry worker."""

from arforge.shared.runtime import run_worker

from .handlers import handle_photogrammetry

if __name__ == "__main__":
    run_worker({"photogrammetry": handle_photogrammetry}, service="photogrammetry")
