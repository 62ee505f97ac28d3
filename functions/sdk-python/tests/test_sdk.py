"""The SDK's conversions, against the local host (`eddy.run`): what a handler
returns or raises becomes the output or the error Eddy records."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import eddy  # noqa: E402


class Sdk(unittest.TestCase):
    def test_json_in_json_out_emits_and_logs(self):
        @eddy.handler
        def handle(inv):
            words = inv.json()["text"].split()
            eddy.log.info(f"{len(words)} words")
            eddy.emit("next", {"n": len(words)})
            return {"words": len(words)}

        r = eddy.run(handle, {"text": "a b c"})
        self.assertEqual(r.json(), {"words": 3})
        self.assertEqual(r.output.content_type, "application/json")
        self.assertEqual(r.logs, [("info", "3 words")])
        self.assertEqual(r.emits, [eddy.Emit("next", b'{"n":3}', "application/json")])

    def test_content_types(self):
        self.assertEqual(eddy.run(lambda inv: "hi").output.content_type, "text/plain; charset=utf-8")
        self.assertEqual(eddy.run(lambda inv: b"\x01").output, eddy.Output(b"\x01", "application/octet-stream"))
        self.assertEqual(eddy.run(lambda inv: eddy.Output(b"a,b\n", "text/csv")).output.content_type, "text/csv")
        self.assertEqual(eddy.run(lambda inv: None).output.payload, b"null")

    def test_an_exception_is_a_final_error_with_message_and_traceback(self):
        def handle(inv):
            raise ValueError("no such thing")

        r = eddy.run(handle)
        self.assertIsNone(r.output)
        self.assertEqual(r.error.code, "exception")
        self.assertFalse(r.error.retryable)
        self.assertTrue(r.error.message.startswith("ValueError: no such thing\n\nTraceback"), r.error.message)
        self.assertIn("test_sdk.py", r.error.message)

    def test_processor_error_and_retry(self):
        def refused(inv):
            raise eddy.ProcessorError("over-limit", "too many rows")

        def later(inv):
            raise eddy.Retry("upstream answered 503")

        e = eddy.run(refused).error
        self.assertEqual((e.code, e.message, e.retryable), ("over-limit", "too many rows", False))
        e = eddy.run(later).error
        self.assertEqual((e.code, e.message, e.retryable), ("retry", "upstream answered 503", True))

    def test_bad_json_is_bad_input(self):
        r = eddy.run(lambda inv: inv.json(), "not json")
        self.assertEqual(r.error.code, "bad-input")
        self.assertTrue(r.error.message.startswith("the payload is not JSON: "))

    def test_config_is_a_dict(self):
        r = eddy.run(lambda inv: inv.config, config={"GREETING": "hi"})
        self.assertEqual(json.loads(r.output.payload), {"GREETING": "hi"})

    def test_the_invocation_says_its_tenant_version_deadline_and_trace(self):
        r = eddy.run(lambda inv: {"tenant": inv.tenant, "version": inv.version,
                                  "left": inv.time_left(), "traceparent": inv.traceparent},
                     timeout_ms=5000)
        out = json.loads(r.output.payload)
        self.assertEqual((out["tenant"], out["version"], out["traceparent"]), ("local", 0, None))
        self.assertTrue(4.0 < out["left"] <= 5.0, out["left"])


if __name__ == "__main__":
    unittest.main()
