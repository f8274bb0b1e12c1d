"""The optimisers: Adam with a warm-up and a decay schedule, optional clipping and frozen
parameters, one per network."""

import jax
import optax

SCHEDULES = ("constant", "linear_decay", "exponential", "cosine")


def validate_optim_config(config) -> None:
  """Raises ValueError naming the field of `config.optim` (or `config.model.freeze`)."""
  if config.optim.schedule not in SCHEDULES:
    raise ValueError(f"config.optim.schedule={config.optim.schedule!r} is not one of "
                     f"{SCHEDULES}")
  for prefix in config.model.freeze:
    if not str(prefix).startswith(("gen/", "disc/")):
      raise ValueError(f"config.model.freeze: {prefix!r} must start with gen/ or disc/")


def create_learning_rate_fn(config, base_lr: float) -> optax.Schedule:
  """Warm-up (linear from 0) followed by the configured decay."""
  o = config.optim
  steps = max(int(config.num_train_steps) - int(o.warmup_steps), 1)
  if o.schedule == "constant":
    main = optax.constant_schedule(base_lr)
  elif o.schedule == "linear_decay":
    main = optax.linear_schedule(base_lr, 0.0, steps)
  elif o.schedule == "exponential":
    main = optax.exponential_decay(base_lr, transition_steps=int(o.decay_every),
                                   decay_rate=float(o.decay_rate), staircase=True)
  elif o.schedule == "cosine":
    main = optax.cosine_decay_schedule(base_lr, steps)
  else:
    raise ValueError(f"config.optim.schedule={o.schedule!r} is not one of {SCHEDULES}")
  if o.warmup_steps <= 0:
    return main
  warmup = optax.linear_schedule(0.0, base_lr, int(o.warmup_steps))
  return optax.join_schedules([warmup, main], [int(o.warmup_steps)])


def create_optimizer(config, base_lr: float, frozen: tuple[str, ...] = ()
                     ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Adam with the configured schedule; `frozen` parameter-path prefixes get zero updates."""
  lr_fn = create_learning_rate_fn(config, base_lr)
  tx = optax.adam(lr_fn, b1=config.optim.b1, b2=config.optim.b2)
  if config.optim.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(config.optim.grad_clip), tx)
  if frozen:  # only then: the optimiser state of runs that freeze nothing is unchanged

    def labels(params):
      def label(path, _):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        return "frozen" if any(name == f or name.startswith(f + "/") for f in frozen) \
            else "train"
      out = jax.tree_util.tree_map_with_path(label, params)
      if "frozen" not in jax.tree_util.tree_leaves(out):
        raise ValueError(f"config.model.freeze: {frozen} matches no parameter")
      return out

    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
  return tx, lr_fn
