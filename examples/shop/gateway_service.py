"""The shop as a small HTTP service, for `keyhole demo`: GET /checkout?order=N charges order N and
answers with its total and receipt, as JSON.

Run it alone (python examples/shop/gateway_service.py [PORT]) or with an agent linked to a gateway
(KEYHOLE_ENROLL_TOKEN=... keyhole run --gateway URL --service shop --ca ca.pem -- python gateway_service.py).
It prints its address on the first line. It listens on 127.0.0.1 only; port 0 (the default) picks a
free one. SIGTERM or Ctrl-C stops it.

The `# keyhole-demo:` comments mark the lines `keyhole demo` sets its probes on: it finds them by
these comments, so the lines can move.
"""

import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shopapp.models import Customer, Order
from shopapp.payments import charge

CATALOGUE = [("keyboard", 49.5), ("monitor", 189.0), ("cable", 7.25), ("chair", 240.0), ("lamp", 31.0)]
TAX_RATE = 0.2


def customer_for(order_id: int) -> Customer:
    n = order_id % 7
    return Customer(id=100 + n, email=f"customer{n}@example.com", card_number="4111 1111 1111 1111")


def checkout(order_id: int) -> dict:
    customer = customer_for(order_id)
    items = [CATALOGUE[(order_id + k) % len(CATALOGUE)] for k in range(1 + order_id % 3)]
    order = Order(id=order_id, customer=customer, items=items)
    total = round(order.total * (1 + TAX_RATE), 2)
    card_number = customer.card_number
    receipt = charge(customer.id, total, card_number)  # keyhole-demo: snapshot
    return {"order": order.id, "items": len(items), "total": total, "receipt": receipt}  # keyhole-demo: log


def route(path: str) -> tuple[int, dict]:
    url = urlsplit(path)
    if url.path == "/checkout":
        return checkout_request(parse_qs(url.query))
    return 404, {"error": "try GET /checkout?order=1"}


def checkout_request(query: dict[str, list[str]]) -> tuple[int, dict]:
    order = query.get("order", [""])[0]
    if not order.isdigit():
        return 400, {"error": "order must be a number: GET /checkout?order=1"}
    return 200, checkout(int(order))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer(*route(self.path))

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the demo shows keyhole's output, not an access log


def main(port: int = 0) -> int:
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it like Ctrl-C: cleanly
    print(f"shop: listening on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("shop: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
