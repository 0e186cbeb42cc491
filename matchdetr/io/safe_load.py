"""What ``torch.load(weights_only=True)`` refused, in words that do not read like advice to switch it off.

torch's message starts with how to load the file anyway ("Re-running `torch.load` with `weights_only` set to
`False` will likely succeed, but it can result in arbitrary code execution ...") and names what it refused
only further down. Cut to a length, that read like the fix; here the refused global or operand is found in
the message and reported alone, and the caller says that matchdetr never unpickles arbitrary objects.
"""

from __future__ import annotations

import re

# torch < 2.5 wrote "Unsupported global: GLOBAL x.y", later versions "unsupported GLOBAL x.y whose module ..."
_GLOBAL = re.compile(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)")
_OPERAND = re.compile(r"(Unsupported operand \S+|Unsupported class \S+)")
_ADVICE = ("Re-running", "weights_only` set to `False`", "trusted source", "Please file an issue",
           "Check the documentation", "In PyTorch 2.6", "Weights only load failed")


def refused_global(err: BaseException) -> str | None:
    """The dotted name of the pickled global (a class or function: code on load) torch refused, if any."""
    found = _GLOBAL.search(str(err))
    return found.group(1).rstrip(".,;") if found else None


def refusal_reason(err: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` failed, as one clause: ``it references posix.system, which could
    run code`` / ``it holds pickle data beyond tensors and containers (Unsupported operand 149)`` / the first
    sentence of the message that is not torch's advice."""
    name = refused_global(err)
    if name:
        return f"it references {name}, which could run code when unpickled"
    text = str(err)
    operand = _OPERAND.search(text)
    if operand:
        return f"it holds pickle data beyond tensors and plain containers ({operand.group(1)})"
    sentences = [s.strip() for s in re.split(r"(?<=[.:])\s+|\n+", text) if s.strip()]
    kept = [s for s in sentences if not any(a in s for a in _ADVICE)]
    return (kept[0] if kept else type(err).__name__).rstrip(".")
