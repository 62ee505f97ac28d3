"""wordcount, in Python: the Rust example's contract (functions/examples/wordcount).

Input {"text": "..."}; output {"words": N, "unique": U, "top": [[word, count], ...]}
with the 5 most frequent lowercased alphanumeric words, ties alphabetical.
"""

import re
from collections import Counter

import eddy

WORD = re.compile(r"[^\W_]+")


@eddy.handler
def handle(inv: eddy.Invocation):
    text = inv.json().get("text") if isinstance(inv.json(), dict) else None
    if not isinstance(text, str):
        raise eddy.ProcessorError("bad-input", 'expected {"text": "..."}')
    freq = Counter(WORD.findall(text.lower()))
    top = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return {"words": sum(freq.values()), "unique": len(freq), "top": [list(t) for t in top]}
