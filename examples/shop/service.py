"""A small order-processing service: two worker threads take orders from a queue for a few seconds.

Run it alone (python examples/shop/service.py) or under keyhole (see the README's demo command);
it prints the same thing either way.
"""

import queue
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shopapp.models import Customer, Order
from shopapp.orders import process_order

CATALOGUE = [("keyboard", 49.5), ("monitor", 189.0), ("cable", 7.25), ("chair", 240.0), ("lamp", 31.0)]


def make_orders(count: int) -> list[Order]:
    rng = random.Random(7)
    orders = []
    for i in range(1, count + 1):
        customer = Customer(id=100 + i % 7, email=f"customer{i % 7}@example.com", card_number="4111 1111 1111 1111")
        items = [rng.choice(CATALOGUE) for _ in range(rng.randint(1, 3))]
        orders.append(Order(id=i, customer=customer, items=items))
    return orders


def worker(jobs: "queue.Queue[Order | None]", results: list) -> None:
    while True:
        order = jobs.get()
        if order is None:
            return
        results.append(process_order(order))
        time.sleep(0.05)


def main(seconds: float = 3.0) -> int:
    jobs: queue.Queue[Order | None] = queue.Queue()
    results: list = []
    threads = [threading.Thread(target=worker, args=(jobs, results), name=f"worker-{n}") for n in (1, 2)]
    for t in threads:
        t.start()
    orders = make_orders(int(seconds * 20))
    for order in orders:
        jobs.put(order)
        time.sleep(seconds / len(orders))
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    revenue = sum(r["total"] for r in results)
    print(f"processed {len(results)} orders, revenue {revenue:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0))
