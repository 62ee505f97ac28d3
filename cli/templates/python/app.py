"""{{name}}: counts the words of {"text": "..."}."""

import eddy


@eddy.handler
def handle(inv: eddy.Invocation):
    text = inv.json().get("text")
    if not isinstance(text, str):
        raise eddy.ProcessorError("bad-input", 'expected {"text": "..."}')
    words = text.split()
    eddy.log.info(f"{len(words)} words")
    return {"words": len(words)}
