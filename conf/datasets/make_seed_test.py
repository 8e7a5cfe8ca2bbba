"""Writes the seed experiment's held-out test: `python conf/datasets/make_seed_test.py` (`--check` only compares).

seed_test/tickets.jsonl: 208 support tickets, 52 a team, from a second generator that shares nothing
with make_seed.py but the instruction line: its own issues, products, times and five styles (short,
long, misspelled, multi-issue with the routed issue second, indirect wording that names no symptom
the training templates use). Training never sees these templates, so the test measures routing, not
recall of make_seed.py's 20 templates; tests/test_seed_sets.py checks that no test ticket is within
difflib ratio 0.7 of any training ticket. The validation split of conf/datasets/seed stays what ftc
watches during training (same generator as training); this file is what the table is scored on.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_seed import PROMPT  # noqa: E402  (the task's instruction line is the one thing shared)

SEED = 20
PER_TEAM = 52
OUT = HERE / "seed_test" / "tickets.jsonl"
STYLES = ("short", "long", "misspelled", "multi", "indirect")

# Products and times that make_seed.py never uses.
PRODUCTS = ["espresso machine", "smart thermostat", "fitness tracker", "gaming console", "air fryer",
            "electric toothbrush", "baby intercom", "projector", "video doorbell", "sewing machine",
            "desk lamp", "hair dryer", "rice cooker", "robot mower"]
TIMES = ["over the weekend", "on Tuesday night", "three weeks back", "since the 14th", "at the start of the month",
         "earlier this afternoon", "before the holidays", "around noon"]

# Per team: a short form and a full clause of each issue ({p} product, {t} time).
ISSUES = {
    "billing": [
        ("double charge on {p}??", "your store took the money for the {p} two times from my credit card"),
        ("{p} price wrong on receipt", "the total on my receipt for the {p} is higher than the price on your site"),
        ("need my money back for {p}", "I sent the {p} back {t} and still have not seen the money returned"),
        ("coupon not applied, {p}", "the discount code was accepted at checkout but I paid full price for the {p}"),
        ("vat missing from receipt", "I need a receipt with VAT listed for the {p} for my company expenses"),
        ("paypal payment failed", "PayPal says the payment for the {p} failed but the money left my balance"),
        ("overcharged for delivery fee", "I was promised free delivery on the {p} but a fee was added to the total"),
    ],
    "shipping": [
        ("where is my {p}", "the parcel with the {p} still says in transit, it is stuck at the depot since {t}"),
        ("{p} box was crushed", "the parcel was soaked and crushed when the driver handed over the {p}"),
        ("wrong {p} colour sent", "the package contained a different model than the {p} I ordered"),
        ("parcel missing a part", "the {p} came without the charger that the order confirmation listed"),
        ("change delivery date", "nobody is home {t}, can the {p} be dropped off another day"),
        ("pickup point too far", "the {p} went to a parcel locker across town instead of my door"),
        ("order split, half missing", "only one of the two parcels arrived, the {p} is not in it"),
    ],
    "technical": [
        ("{p} won't turn on", "the {p} does nothing when I press the power button, the light stays off"),
        ("{p} keeps beeping", "the {p} beeps three times and then stops working"),
        ("bluetooth pairing fails", "my {p} does not show up when I search for bluetooth devices"),
        ("{p} firmware stuck at 40%", "the firmware download on the {p} freezes halfway and never finishes"),
        ("{p} overheats", "the {p} gets very hot after ten minutes and switches itself off"),
        ("{p} display flickers", "the little display on the {p} flickers and shows garbage characters"),
        ("{p} battery drains fast", "the {p} battery is empty after an hour even though it charged all night"),
    ],
    "account": [
        ("2fa code never arrives", "the sign-in code you text me never comes so I am stuck at the login page"),
        ("locked out after 3 tries", "my profile is locked after I typed the wrong PIN a few times {t}"),
        ("change my username", "I want to pick a new username for my profile, the old one has my maiden name"),
        ("merge two profiles", "I have two profiles with different emails and want the order history in one"),
        ("close my profile pls", "please remove my customer profile and all the personal data you store"),
        ("strange login alert", "I got an alert that somebody signed in to my profile from another country {t}"),
        ("update phone number", "my mobile number changed and the profile still sends codes to the old one"),
    ],
}
# Indirect wording: the issue told as a situation, without its usual words.
INDIRECT = {
    "billing": ["my bank statement shows two identical lines from your shop for the {p}",
                "the amount that left my account {t} does not match what the {p} cost",
                "my partner saw your shop's name twice on our card this month, we bought one {p}",
                "the {p} was a gift, returned {t}, and my card has not been credited"],
    "shipping": ["the neighbour says a van came {t} but there is nothing on my doorstep",
                 "the tracking map shows my {p} going in circles between two cities",
                 "I have been waiting at home all day and the {p} is nowhere to be seen",
                 "the label on the box that came {t} has somebody else's name and not my {p}"],
    "technical": ["I followed the manual for the {p} twice and it still just blinks red",
                  "since the {p} updated itself {t} half the buttons do nothing",
                  "the {p} worked for a week and now it makes a clicking noise and stops",
                  "my {p} and my phone refuse to talk to each other after the latest patch"],
    "account": ["I moved abroad and now the site keeps asking me to prove who I am before I can see anything",
                "my old email is gone and I cannot get into my profile to see the {p} order",
                "somebody changed the name on my profile {t} and it was not me",
                "the site says my details belong to another customer when I try to sign up again"],
}
# The first, unrouted remark of a multi-issue ticket: praise or a note on another team's topic.
ASIDES = ["the {p} itself is great", "delivery was quick", "your chat agent was friendly",
          "the app looks nice after the redesign", "I like the {p} a lot", "the price was fair"]
OPENERS = ["Hello team", "Good morning", "Hi there", "Dear customer service", "Hey"]
CLOSINGS = ["I have been a customer for years and this is frustrating.", "Thanks in advance for sorting it out.",
            "Please get back to me soon, I need it for work.", "Let me know what you need from me."]


def misspell(text: str, rng: random.Random) -> str:
    """Typos a customer makes: swapped neighbours, a dropped letter, a doubled one, in about one word of three."""
    words = text.split()
    for i, word in enumerate(words):
        if len(word) < 4 or rng.random() > 0.4:
            continue
        k = rng.randrange(1, len(word) - 2)
        kind = rng.randrange(3)
        if kind == 0:
            word = word[:k] + word[k + 1] + word[k] + word[k + 2:]
        elif kind == 1:
            word = word[:k] + word[k + 1:]
        else:
            word = word[:k] + word[k] + word[k:]
        words[i] = word
    return " ".join(words)


def ticket(team: str, style: str, rng: random.Random) -> str:
    fill = {"p": rng.choice(PRODUCTS), "t": rng.choice(TIMES)}
    short, clause = rng.choice(ISSUES[team])
    if style == "short":
        return short.format(**fill) if "{p}" in short else f"{short.format(**fill)}, {fill['p']} order"
    if style == "long":
        return (f"{rng.choice(OPENERS)}, I ordered a {fill['p']} from you a while ago. Now {clause.format(**fill)}. "
                f"{rng.choice(CLOSINGS)}")
    if style == "misspelled":
        return misspell(clause.format(**fill), rng).capitalize()
    if style == "multi":
        return f"{rng.choice(ASIDES).format(**fill).capitalize()}, but {clause.format(**fill)}."
    return rng.choice(INDIRECT[team]).format(**fill).capitalize() + "."


def test_rows(per_team: int = PER_TEAM, seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    seen, rows = set(), []
    for team in sorted(ISSUES):
        count, tries = 0, 0
        while count < per_team:
            tries += 1
            if tries > 100 * per_team:
                raise RuntimeError(f"{team}: not enough distinct tickets")
            text = ticket(team, STYLES[count % len(STYLES)], rng)
            if text not in seen:
                seen.add(text)
                rows.append({"prompt": PROMPT.format(text=text), "completion": " " + team, "style": STYLES[count % len(STYLES)]})
                count += 1
    rng.shuffle(rows)
    return rows


def render() -> str:
    return "".join(json.dumps(row) + "\n" for row in test_rows())


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        stale = not OUT.is_file() or OUT.read_text(encoding="utf-8") != text
        print(f"stale: {OUT}" if stale else "up to date")
        return 1 if stale else 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
