import hashlib

# A credential that must never leave the process, whatever a probe looks at.
PAYMENT_API_KEY = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"


def charge(customer_id: int, amount: float, card_number: str) -> str:
    digest = hashlib.sha256(f"{customer_id}:{amount}:{card_number}".encode()).hexdigest()
    if amount <= 0:
        raise ValueError(f"cannot charge {amount}")
    return "ch_" + digest[:12]
