"""A webhook receiver as a customer would write one: every delivery is verified with the Standard Webhooks
package from PyPI (`standardwebhooks`), and only a verified one is acknowledged (204).

Usage: webhook_receiver.py PORT. The tests steer it through /control/ paths:
  POST /control/secret   body: the endpoint's `whsec_...` secret (until it is set, deliveries get 503)
  POST /control/down     body: "1" to answer 503 to every delivery, "0" to accept again
  POST /control/slow     body: seconds to wait before answering each delivery
  GET  /control/received the verified deliveries, in arrival order: [{"webhook_id", "event"}], the number whose
                         signature failed, and the webhook-ids of those refused (down, or no secret yet)
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

LOCK = threading.Lock()
STATE = {"secret": None, "down": False, "slow_s": 0.0, "received": [], "rejected": 0, "refused": []}


class Receiver(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != "/control/received":
            return self.answer(404)
        with LOCK:
            body = json.dumps(
                {"received": STATE["received"], "rejected": STATE["rejected"], "refused": STATE["refused"]}
            ).encode()
        self.answer(200, body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path.startswith("/control/"):
            return self.control(self.path[len("/control/"):], body.decode())
        with LOCK:
            secret, down, slow_s = STATE["secret"], STATE["down"], STATE["slow_s"]
        if slow_s:
            time.sleep(slow_s)
        if down or secret is None:
            with LOCK:
                STATE["refused"].append(self.headers.get("webhook-id"))
            return self.answer(503)
        try:
            event = Webhook(secret).verify(body, dict(self.headers.items()))
        except WebhookVerificationError:
            with LOCK:
                STATE["rejected"] += 1
            return self.answer(400)
        with LOCK:
            STATE["received"].append({"webhook_id": self.headers["webhook-id"], "event": event})
        self.answer(204)

    def control(self, what, text):
        with LOCK:
            if what == "secret":
                STATE["secret"] = text
            elif what == "down":
                STATE["down"] = text == "1"
            elif what == "slow":
                STATE["slow_s"] = float(text)
            else:
                return self.answer(404)
        self.answer(204)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver)
    server.daemon_threads = True
    server.serve_forever()
