"""A progress bar on stderr for long fingerprinting runs (tqdm)."""


class ProgressBar:
    """Callable given to :func:`index_library` as ``progress``; shows a tqdm bar.

    The bar appears only when there is work and only on a terminal (tqdm's
    ``disable=None``), so logs and pipes stay clean.
    """

    def __init__(self, description, *, enabled=True):
        self._description = description
        self._enabled = enabled
        self._bar = None

    def __call__(self, total):
        if not self._enabled:
            return lambda done: None
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=self._description, unit="photo", disable=None, leave=False)
        return self._bar.update

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
