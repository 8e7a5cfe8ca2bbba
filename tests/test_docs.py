"""Docs come from the schema: the README's config reference is exactly what the generator prints."""

from ftc.compiler.config import docs


def test_readme_config_reference_is_generated_from_the_schema():
    readme = docs.README.read_text()
    section = readme.split(docs.BEGIN, 1)[1].split(docs.END, 1)[0].strip()
    assert section == docs.reference(), "run: python -m ftc.compiler.config.docs --write"


def test_reference_lists_every_method_field():
    text = docs.reference()
    for key in ("method.lora.adapter_dim", "method.beta", "method.num_generations", "method.reward.kind",
                "resources.zero_stage", "cluster.partitions", "data.replay.fraction"):
        assert f"`{key}`" in text
