"""`drivelab bench readme` fills README blocks from results files: full, empty and missing ones."""

from drivelab.benchmarks.bench.readme import update


def test_blocks_are_replaced_whether_empty_or_full_and_others_kept(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "alpha.md").write_text("| a |\n|---|\n| 1 |\n")
    (results / "beta.md").write_text("new beta\n")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- table:alpha -->\n<!-- /table:alpha -->\ntext\n"
                      "<!-- table:beta -->\nold beta\nmore old\n<!-- /table:beta -->\n"
                      "<!-- table:gamma -->\nkept\n<!-- /table:gamma -->\nend\n")
    assert update(readme, results) == ["alpha", "beta"]
    assert readme.read_text() == ("intro\n<!-- table:alpha -->\n| a |\n|---|\n| 1 |\n<!-- /table:alpha -->\ntext\n"
                                  "<!-- table:beta -->\nnew beta\n<!-- /table:beta -->\n"
                                  "<!-- table:gamma -->\nkept\n<!-- /table:gamma -->\nend\n")
    before = readme.read_text()
    update(readme, results)  # idempotent
    assert readme.read_text() == before
