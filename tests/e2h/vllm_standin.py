"""A stand-in for `trl vllm-serve` (which needs CUDA): answers /health on --port, as told by VLLM_STANDIN.

VLLM_STANDIN=healthy (default) answers 200; =unhealthy answers 503 forever (TRL's client would loop);
=exit exits with code 3 at once. It records its argv and CUDA_VISIBLE_DEVICES in VLLM_STANDIN_RECORD.
"""

import http.server
import json
import os
import sys


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        healthy = os.environ.get("VLLM_STANDIN", "healthy") == "healthy"
        self.send_response(200 if healthy and self.path.rstrip("/") == "/health" else 503)
        self.end_headers()

    def log_message(self, *args):
        pass


def main() -> None:
    args = sys.argv[1:]
    record = os.environ.get("VLLM_STANDIN_RECORD")
    if record:
        with open(record, "w") as f:
            json.dump({"argv": args, "pid": os.getpid(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}, f)
    if os.environ.get("VLLM_STANDIN") == "exit":
        sys.exit(3)
    port = int(args[args.index("--port") + 1])
    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()


if __name__ == "__main__":
    main()
