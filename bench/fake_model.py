"""A minimal OpenAI-compatible streaming server for benchmarks (loopback only).

POST /v1/chat/completions answers with SSE: a role chunk, then TOKENS content chunks, then
usage and [DONE]. With "stream": false it answers one JSON completion. No waiting anywhere, so
what a benchmark measures is the caller's overhead.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKENS = ["Hel", "lo", " from", " the", " fake", " model", "!"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if not body.get("stream"):
            payload = json.dumps({
                "choices": [{"message": {"role": "assistant", "content": "".join(TOKENS)}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": len(TOKENS), "total_tokens": 5 + len(TOKENS)},
            }).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        chunks = [{"choices": [{"delta": {"role": "assistant", "content": ""}}]}]
        chunks += [{"choices": [{"delta": {"content": t}}]} for t in TOKENS]
        chunks += [{"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": len(TOKENS), "total_tokens": 12}}]
        for c in chunks:
            self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
