"""Offline synthetic conversations from templates: no endpoint, no model, seeded, instant.

It follows the same phases as the LLM generator (personas per aspect, then conversations per persona) so the
rest of the pipeline can be exercised anywhere, but its variety is only what the templates below combine: use an
LLM generator for training data you care about. Unknown aspects get generic templates that name the aspect.
The phrasings were written for this project.
"""

from __future__ import annotations

import datetime as dt
import random

from rlft.data.synthetic.schema import Conversation, Persona

FIRST_NAMES = ["Dana", "Luis", "Priya", "Tom", "Mei", "Jonas", "Aisha", "Carlos", "Ingrid", "Kofi", "Sara", "Yuki"]
PRODUCTS = ["wireless headphones", "espresso machine", "standing desk", "winter jacket", "smartwatch",
            "air fryer", "gaming mouse", "yoga mat", "bluetooth speaker", "office chair"]

# (label, description, traits, openers added to the customer's messages)
ARCHETYPES = [
    ("serial refund seeker", "demands refunds aggressively and will not take no for an answer",
     ["insistent", "cites consumer law"], ["I want a full refund, no excuses. ", "Refund me. Now. "]),
    ("technically confused", "gets more frustrated with every clarification attempt",
     ["unsure of terms", "asks the same thing twice"], ["Sorry, I don't really get this. ", "I'm lost here. "]),
    ("patience ran out", "was polite for weeks, but repeated failures have exhausted their patience",
     ["formerly polite", "keeps a log of every contact"], ["I have been very patient, but ", "Third time asking: "]),
    ("quality inspector", "finds a flaw in everything and documents it",
     ["detail-oriented", "sends photos"], ["I documented another defect. ", "For the record: "]),
    ("justifiably angry", "was clearly wronged by the store and says so",
     ["direct", "threatens to leave a review"], ["This is unacceptable. ", "I'm furious. "]),
    ("in a hurry", "needs a resolution today and hates long answers",
     ["short messages", "deadline-driven"], ["Quick question, no time: ", "Need this fixed today. "]),
]

AGENT_REPLIES = [
    "I'm sorry about this. Could you confirm the email address on order {order}?",
    "Thanks for reaching out. I can see order {order} from {date}; let me check what happened.",
    "I understand the frustration. I've opened a case for order {order} and I'm looking into it now.",
    "Thank you for your patience. Our records show order {order} was updated on {date2}.",
    "I apologise for the trouble. Can you tell me a bit more about what you received?",
]
GREETINGS = ["Hi, thanks for contacting support! How can I help you today?",
             "Hello, you're chatting with the support team. What can I do for you?"]

SCENARIOS: dict[str, dict[str, list[str]]] = {
    "refund handling": {
        "open": ["I returned the {product} from order {order} on {date} and still have no refund of {amount}.",
                 "Order {order} arrived broken on {date}. I want my {amount} back.",
                 "You charged me {amount} for order {order} but I cancelled it on {date}."],
        "follow": ["The return label said refunds take 5 days. It's been {days} days since {date}.",
                   "I already sent the tracking number for the return of the {product}.",
                   "Your colleague promised the refund would arrive by {date2}. It didn't."],
        "final": ["So when exactly will the {amount} be back on my card?",
                  "Can you refund it right now, or do I need to dispute the charge with my bank?",
                  "Why should I wait another week for money you owe me?"],
    },
    "managing difficult customers": {
        "open": ["Your store is a joke. Order {order} from {date} is still not here.",
                 "I've called three times about order {order} and nobody helps.",
                 "The {product} in order {order} is junk and your last agent was rude to me on {date}."],
        "follow": ["Don't give me the scripted apology again.", "I want to talk to someone who can actually decide.",
                   "I have screenshots of every chat since {date}."],
        "final": ["What are you personally going to do about it?", "Give me one reason not to post this everywhere.",
                  "Are you going to fix this or waste more of my time?"],
    },
    "first-contact resolution": {
        "open": ["My {product} from order {order} stopped charging on {date}.",
                 "I was billed twice for order {order} on {date}.",
                 "The discount code didn't apply to order {order} placed {date}."],
        "follow": ["I already tried restarting it and a different cable.",
                   "Both charges of {amount} show on my statement.", "The code was valid until {date2}, I checked."],
        "final": ["Can you sort this out in this chat so I don't have to call again?",
                  "What is the fix, step by step?", "Can you apply the {amount} difference now?"],
    },
    "customer satisfaction optimization": {
        "open": ["I'm a bit disappointed with order {order}, the {product} isn't what I expected.",
                 "Order {order} arrived on {date} but the box was damaged.",
                 "I've been a customer for years and order {order} was my worst experience."],
        "follow": ["It works, but the colour is nothing like the photos.", "The {product} itself seems fine, I think.",
                   "I expected better after spending {amount}."],
        "final": ["Is there anything you can do to make this right?", "Should I keep it or send it back?",
                  "Honestly, why should I order from you again?"],
    },
    "product complaint handling": {
        "open": ["The {product} from order {order} overheats after ten minutes.",
                 "Two parts of the {product} in order {order} were missing when it arrived on {date}.",
                 "The {product} I got with order {order} has a crack along the side."],
        "follow": ["I followed the manual exactly.", "I sent photos to your email on {date2}.",
                   "This is the second unit with the same defect."],
        "final": ["Is this a known defect, and will a replacement have the same problem?",
                  "Do I get a replacement or a refund, and who pays return shipping?",
                  "Is it even safe to keep using it?"],
    },
    "escalation efficiency": {
        "open": ["I need a supervisor about order {order}, this has dragged on since {date}.",
                 "Your chatbot closed my ticket on order {order} twice.",
                 "Order {order} was marked delivered on {date} but I never got it, and this is my fourth contact."],
        "follow": ["Case numbers from the last agents didn't help.", "I was told someone would call me by {date2}.",
                   "I don't want to explain everything again from scratch."],
        "final": ["Can you escalate this now and tell me who will contact me and when?",
                  "Is there anyone with the authority to just resolve it?", "What happens next, exactly?"],
    },
    "shipping communication": {
        "open": ["Order {order} was supposed to arrive on {date}. Where is it?",
                 "Tracking for order {order} hasn't updated since {date}.",
                 "I paid {amount} for express shipping on order {order} and it's late."],
        "follow": ["The carrier says it's with you, you say it's with them.",
                   "I need the {product} before {date2}, it's a gift.", "The estimated date keeps moving."],
        "final": ["Will it arrive by {date2} or not?", "Do I get the express fee back?",
                  "Should I just order it again somewhere else?"],
    },
    "proactive problem-solving": {
        "open": ["I'm moving on {date}; order {order} is going to my old address.",
                 "My card expires before the next payment for order {order}.",
                 "I ordered a {product} with order {order} but I think I picked the wrong size."],
        "follow": ["The new address is only a few streets away.", "I don't want the order cancelled over this.",
                   "It hasn't shipped yet according to the tracking."],
        "final": ["What should I do so this doesn't turn into a problem?", "Can you change it before it ships?",
                  "Is there anything else I should know before {date2}?"],
    },
}
GENERIC = {
    "open": ["I have an issue with {aspect} on order {order} placed on {date}.",
             "About order {order} from {date}: something went wrong with {aspect}."],
    "follow": ["I already explained this once.", "This has been going on since {date}."],
    "final": ["What can you do about it today?", "How will you resolve this?"],
}


def _date(rng: random.Random, base: dt.date, offset: int) -> str:
    return (base + dt.timedelta(days=offset)).strftime("%B %-d")


def make_personas(aspect: str, count: int, rng: random.Random, start: int) -> list[Persona]:
    personas = []
    archetypes = rng.sample(ARCHETYPES, k=min(count, len(ARCHETYPES)))
    while len(archetypes) < count:
        archetypes.append(rng.choice(ARCHETYPES))
    for j, (label, description, traits, _) in enumerate(archetypes):
        name = rng.choice(FIRST_NAMES)
        personas.append(Persona(f"persona-{start + j:03d}", aspect, f"{name}, {label}",
                                f"a customer who {description}, contacting support about {aspect}",
                                list(traits), f"get their {aspect} issue resolved on their terms"))
    return personas


def make_conversation(persona: Persona, conv_id: str, seed: int, min_turns: int, max_turns: int) -> Conversation:
    rng = random.Random(seed)
    scenario = SCENARIOS.get(persona.aspect.lower(), GENERIC)
    openers = next((a[3] for a in ARCHETYPES if persona.name.endswith(a[0])), [""])
    base = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randint(0, 330))
    fields = {"order": f"ORD-{rng.randint(10000, 99999)}", "date": _date(rng, base, 0),
              "date2": _date(rng, base, rng.randint(3, 14)), "product": rng.choice(PRODUCTS),
              "amount": f"${rng.randint(19, 499)}.{rng.choice(['00', '49', '99'])}", "days": str(rng.randint(8, 30)),
              "aspect": persona.aspect}
    turns = rng.randint(min_turns, max_turns)
    messages = []
    if turns % 2 == 0:  # an even count ending with the customer starts with the agent's greeting
        messages.append({"role": "assistant", "content": rng.choice(GREETINGS)})
    user_turns = (turns + 1) // 2
    follows = rng.sample(scenario["follow"], k=min(len(scenario["follow"]), max(user_turns - 2, 0)))
    user_texts = [rng.choice(scenario["open"])] + follows + [rng.choice(scenario["final"])]
    while len(user_texts) < user_turns:
        user_texts.insert(-1, rng.choice(scenario["follow"]))
    user_texts = user_texts[:user_turns - 1] + [user_texts[-1]] if user_turns > 1 else [user_texts[0]]
    agent_texts = rng.sample(AGENT_REPLIES, k=user_turns - 1)
    for k, text in enumerate(user_texts):
        # the persona's voice opens the conversation and sometimes returns at the end, not on every turn
        chance = 0.7 if k == 0 else (0.4 if k == len(user_texts) - 1 else 0.0)
        opener = rng.choice(openers) if rng.random() < chance else ""
        messages.append({"role": "user", "content": (opener + text).format(**fields)})
        if k < len(agent_texts):
            messages.append({"role": "assistant", "content": agent_texts[k].format(**fields)})
    return Conversation(conv_id, persona, messages, "template", seed)
