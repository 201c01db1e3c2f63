from dataclasses import dataclass, field


@dataclass
class Customer:
    id: int
    email: str
    card_number: str


@dataclass
class Order:
    id: int
    customer: Customer
    items: list[tuple[str, float]] = field(default_factory=list)

    @property
    def total(self) -> float:
        return round(sum(price for _, price in self.items), 2)
