"""Words for counts in messages: ``1 epoch``, ``3 epochs``."""


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
