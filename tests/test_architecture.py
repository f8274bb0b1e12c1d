"""The folder listing is the architecture: libraries never import upward.

Sub-packages are layered, lowest first (`LAYERS`); a library module may import modules of
its own package and of lower layers only, anywhere in the file (imports inside functions
count too). Commands -- the modules directly in `mangacolor_jax/` and the four data-set
commands -- may import any library, and nothing imports a command.
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "mangacolor_jax"
LAYERS = (
    ("utils",),
    ("runtime",),
    ("nn",),
    ("input_pipeline",),
    ("data",),
    ("training",),
    ("infer",),
    ("debug", "perf", "protocol", "tuning"),
)
COMMANDS = {"mangacolor_jax.data.crawl", "mangacolor_jax.data.clean",
            "mangacolor_jax.data.prepare", "mangacolor_jax.data.inspect"}


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
  parts = list(path.relative_to(root.parent).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


PACKAGES = {package for group in LAYERS for package in group}


def is_command(module: str) -> bool:
  parts = module.split(".")
  return (len(parts) == 2 and parts[1] not in PACKAGES) or module in COMMANDS


def layer(module: str) -> int | None:
  """The layer of a module of the package (None: the package root)."""
  parts = module.split(".")
  if len(parts) < 2:
    return None
  for rank, packages in enumerate(LAYERS):
    if parts[1] in packages:
      return rank
  raise AssertionError(f"{module} is in no layer of LAYERS: add its package there")


def imported_modules(tree: ast.AST, importer: str) -> list[str]:
  """Every module of the package that `tree` imports (from anywhere in the file)."""
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found += [a.name for a in node.names if a.name.startswith("mangacolor_jax")]
    elif isinstance(node, ast.ImportFrom) and node.module:
      base = node.module
      if node.level:  # relative: resolve against the importer's package
        base = ".".join(importer.split(".")[:-node.level] + [node.module])
      if base.startswith("mangacolor_jax"):
        found += [f"{base}.{a.name}" for a in node.names]
  return found


def violations(root: pathlib.Path) -> list[str]:
  """Each import that runs upward or into a command, as "importer -> imported"."""
  out = []
  for path in sorted(root.rglob("*.py")):
    importer = module_name(path, root)
    for imported in imported_modules(ast.parse(path.read_text()), importer):
      if imported == "mangacolor_jax.__version__":
        continue
      if is_command(imported):
        out.append(f"{importer} -> {imported} (a command)")
      elif not is_command(importer) and layer(importer) is not None:
        same_package = importer.split(".")[1] == imported.split(".")[1]
        if not same_package and layer(imported) >= layer(importer):
          out.append(f"{importer} -> {imported}")
  return out


def test_no_library_imports_upward_or_a_command():
  assert violations(PACKAGE) == []


def test_the_check_finds_an_upward_import(tmp_path):
  root = tmp_path / "mangacolor_jax"
  for folder in ("nn", "training"):
    (root / folder).mkdir(parents=True)
  (root / "__init__.py").write_text("")
  (root / "train.py").write_text("from mangacolor_jax.training import loop\n")
  (root / "training" / "loop.py").write_text("from mangacolor_jax.nn import models\n")
  (root / "nn" / "models.py").write_text(
      "def f():\n  from mangacolor_jax.training import loop\n")
  (root / "nn" / "losses.py").write_text("from mangacolor_jax import train\n")
  assert violations(root) == [
      "mangacolor_jax.nn.losses -> mangacolor_jax.train (a command)",
      "mangacolor_jax.nn.models -> mangacolor_jax.training.loop"]
