"""Data-set tooling: every step of building a colorization data set is a command.

  python -m mangacolor_jax.data.crawl --site safebooru --tags "1girl solo" --limit 500 --out raw
  python -m mangacolor_jax.data.clean --input raw --output clean
  python -m mangacolor_jax.data.prepare --input clean --output tfds_data
  python -m mangacolor_jax.data.inspect --config configs/anime_faces_tfds.py \
      --config.data.tfds_dir=tfds_data --output inspect_out

Each step reads the previous one's output, never modifies it, is safe to re-run and leaves a
report a person can look at (JSON, Markdown and contact sheets or grids). Training reads the
result with `config.data.source = "tfds"` (see `mangacolor_jax.input_pipeline`).

A command's module holds its documentation, flags and `main`; the library under it:

  crawl     boards (the sites' APIs), http_client (polite GETs), crawler (the crawl)
  clean     inputs (an input folder's images and their ids), decoding, measures,
            similarity, cleaner (the checks), clean_report (manifest, report, sheets)
  prepare   splitting (near-duplicate clusters dealt out to splits), preparer, tfds_builder
  inspect   inspection (batches as training draws them, and their checks)
  shared    staging (an output folder replaced as a whole), sheets (pictures),
            command_line (the check of a command's arguments)
"""
