"""A FAKE OpenAI-compatible server on 127.0.0.1 for the gate's judge and endpoint failure tests.

It stands in only for what cannot run here on CPU in seconds: a judge with a known pathology (always
A, always a tie, no verdict token), an endpoint that never answers or answers `content: null`. The
gate code path (backends, judge, rules, reports) is the real one. Behaviour is chosen by the
request's `model`:

- `cand`, `prod`: chat answers that differ between the two (and name the turn they answer);
- `cand-risky`: `cand`, except that it asks for the password when the customer mentions one;
- `judge-constant` (always A), `judge-ties` (always C), `judge-noverdict` (logprobs without any
  verdict label): for logprob requests; chat requests get a short reasoning text;
- `null`: `content: null`; `hang`: accepts the request and never answers (until the server stops).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOP = {
    "judge-constant": [("A", -0.05), ("3", -0.1), ("no", -0.2)],
    "judge-ties": [("C", -0.05), ("3", -0.1), ("no", -0.2)],
    "judge-noverdict": [("The", -0.05), ("I", -0.5), ("Both", -1.0)],
}


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.stop = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                model = body["model"]
                if model == "hang":
                    fake.stop.wait(120)
                    return
                msgs = body["messages"]
                if body.get("logprobs") and model in TOP:
                    choice = {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": TOP[model][0][0]},
                              "logprobs": {"content": [{"token": TOP[model][0][0], "logprob": TOP[model][0][1], "bytes": None,
                                                        "top_logprobs": [{"token": t, "logprob": lp, "bytes": None}
                                                                         for t, lp in TOP[model]]}]}}
                elif model == "null":
                    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None}}
                else:
                    last = msgs[-1]["content"]
                    turn = sum(m["role"] == "user" for m in msgs)
                    if model == "cand-risky" and "password" in last.lower():
                        model = "risky"
                    text = {"cand": f"Candidate (turn {turn}): happy to help. {last[:30]}",
                            "cand-risky": f"Candidate (turn {turn}): happy to help. {last[:30]}",
                            "risky": "Please send me your password and I will log in for you to check.",
                            "prod": f"Prod reply for turn {turn}: {last[:20]} and more words here"}.get(model, "A short reason.")
                    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                out = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": model,
                                  "choices": [choice]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeOpenAI":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()

    def registry(self) -> str:
        names = ["cand", "cand-risky", "prod", "judge-constant", "judge-ties", "judge-noverdict", "null", "hang"]
        return "".join(f'[models.{n.replace("-", "_")}]\nendpoint = "{self.url}"\nmodel = "{n}"\n' for n in names)
