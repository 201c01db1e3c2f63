from shopapp.models import Order
from shopapp.payments import PAYMENT_API_KEY, charge

TAX_RATE = 0.2


def process_order(order: Order, discount: float = 0.0) -> dict:
    subtotal = order.total
    tax = round(subtotal * TAX_RATE, 2)
    total = round(subtotal + tax - discount, 2)
    api_key = PAYMENT_API_KEY
    receipt = charge(order.customer.id, total, order.customer.card_number)
    return {"order": order.id, "total": total, "receipt": receipt, "key_suffix": api_key[-4:]}
