"""A small built-in customer-support dataset with ground-truth intents, generated from templates (seeded).

It exists so the default recipe runs with no download. Labels follow the Bitext intent names, so a recipe moves
to real data (`../shared/data/bitext/` or your own CSV with `utterance,intent`) by changing `data.source` only.
Templates are illustrative customer phrasings written for this project; they are not copied from any dataset.
"""

from __future__ import annotations

import random

TEMPLATES: dict[str, list[str]] = {
    "cancel_order": [
        "I want to cancel order {order}", "please cancel my last order, I changed my mind",
        "how do I cancel the {item} I ordered {when}?", "can you stop order {order} before it ships",
        "I need to cancel a purchase I made {when}", "cancel order {order} please",
    ],
    "track_order": [
        "where is my order {order}?", "can you tell me where my {item} is", "I want to track order {order}",
        "my package from {when} hasn't arrived, where is it?", "what's the status of order {order}",
        "how can I follow the delivery of my {item}",
    ],
    "get_refund": [
        "I want my money back for order {order}", "how do I get a refund for the {item}?",
        "please refund the {item} I returned {when}", "I'd like a refund, the {item} was broken",
        "can I get reimbursed for order {order}", "refund my purchase from {when}",
    ],
    "change_shipping_address": [
        "I need to change the delivery address for order {order}", "please ship my {item} to a different address",
        "can I update the shipping address on my order?", "I moved {when}, change the address on order {order}",
        "wrong address on order {order}, can you fix it", "how do I edit where my {item} gets delivered",
    ],
    "payment_issue": [
        "my card was declined when paying for the {item}", "I was charged twice for order {order}",
        "the payment for order {order} failed", "there's a problem with my payment from {when}",
        "why did my payment not go through?", "I can't pay for my {item}, it keeps giving an error",
    ],
    "recover_password": [
        "I forgot my password", "how do I reset my password?", "I can't log in, I lost my password",
        "help me recover access to my account, forgot the password {when}", "password reset link not working",
        "I need a new password for my account",
    ],
    "delete_account": [
        "please delete my account", "how do I close my account permanently?", "I want to remove my profile",
        "delete all my data and my account", "I don't use this anymore, close my account",
        "can you terminate my account {when}",
    ],
    "contact_human_agent": [
        "let me talk to a real person", "I want to speak with a human agent", "connect me to an operator please",
        "can I chat with a live agent about order {order}", "stop the bot, get me a human",
        "I need a human representative",
    ],
    "check_invoice": [
        "can I see the invoice for order {order}?", "where do I find my bill from {when}",
        "I want to check the invoice for my {item}", "show me my invoices", "I need to look at my last bill",
        "is there an invoice for order {order}",
    ],
    "delivery_options": [
        "what shipping options do you have?", "do you offer express delivery?",
        "which delivery methods can I choose for the {item}", "can I pick up my order in store?",
        "what are the shipping choices for international orders", "is next-day delivery available",
    ],
}
ITEMS = ["laptop", "headphones", "blue jacket", "coffee maker", "running shoes", "phone case", "desk lamp", "book"]
WHENS = ["yesterday", "last week", "on Monday", "two days ago", "this morning", "last month"]
OPENERS = ["", "", "", "hi, ", "hello, ", "hey ", "good morning, ", "excuse me, "]
CLOSERS = ["", "", "", " thanks", " thank you!", " asap", " please help"]


def make_demo_intents(n: int = 600, seed: int = 0) -> list[dict[str, str]]:
    """`n` rows of {utterance, intent}, balanced over intents, reproducible for a given seed."""
    rng = random.Random(seed)
    intents = sorted(TEMPLATES)
    rows = []
    for i in range(n):
        intent = intents[i % len(intents)]
        text = rng.choice(TEMPLATES[intent]).format(
            order=f"#{rng.randint(10000, 99999)}", item=rng.choice(ITEMS), when=rng.choice(WHENS)
        )
        rows.append({"utterance": (rng.choice(OPENERS) + text + rng.choice(CLOSERS)).strip(), "intent": intent})
    rng.shuffle(rows)
    return rows


def _tagged(intent: str) -> str:
    return f"<intent>{intent}</intent>"


def make_demo_pairs(n: int = 600, seed: int = 0) -> list[dict[str, str]]:
    """DPO demo rows {prompt, chosen, rejected, intent}: the correct intent tag beats a wrong one."""
    rng = random.Random(seed + 1)
    intents = sorted(TEMPLATES)
    rows = []
    for row in make_demo_intents(n, seed):
        wrong = rng.choice([i for i in intents if i != row["intent"]])
        rows.append({"prompt": row["utterance"], "chosen": _tagged(row["intent"]), "rejected": _tagged(wrong),
                     "intent": row["intent"]})
    return rows


def make_demo_kto(n: int = 600, seed: int = 0) -> list[dict[str, object]]:
    """KTO demo rows {prompt, completion, label, intent}: half correct (True), half a wrong intent (False)."""
    rng = random.Random(seed + 2)
    intents = sorted(TEMPLATES)
    rows = []
    for i, row in enumerate(make_demo_intents(n, seed)):
        good = i % 2 == 0
        label = row["intent"] if good else rng.choice([x for x in intents if x != row["intent"]])
        rows.append({"prompt": row["utterance"], "completion": _tagged(label), "label": good, "intent": row["intent"]})
    return rows


DEMO_SOURCES = {"demo:intents": make_demo_intents, "demo:intent_pairs": make_demo_pairs, "demo:intent_kto": make_demo_kto}
