"""The objective: what D and G minimise in a training step.

The training step (`step.train_step`), the diagnostics that recompute its gradients
(`diagnostics.stats`) and the doctor's checks (`debug.model_checks`) all call these
functions, so the losses they look at are the losses that train.

  D: loss.gan's D loss on (real, fake) + loss.gp_weight * gradient penalty
  G: loss.l1_weight * L1 + loss.mse_weight * MSE [+ loss.chroma_weight * chroma L1]
     [+ loss.gan_weight * adversarial]
     (+ loss.l2_weight * L2 of G's kernels, added to the gradients by the step)
"""

import jax

from mangacolor_jax.nn import hints as hints_lib
from mangacolor_jax.nn import losses
from mangacolor_jax.runtime import seeds
from mangacolor_jax.training import state as state_lib


def step_hints(nets: state_lib.Networks, keys: seeds.StepKeys, target: jax.Array,
               lineart: jax.Array, g_params, g_batch_stats):
  """The hints a training step gives G (None when the model takes none).

  With `hints.guided_share` > 0, G (`g_params`, as in training) first colours the batch
  without hints, and strokes go where that colouring is wrong (`hints.training_hints`).
  """
  if not nets.use_hints:
    return None
  plain = None
  if nets.config.hints.mode == "strokes" and nets.config.hints.guided_share > 0:
    no_hints = nets.generator_input(lineart, hints_lib.no_hints(lineart))
    plain, _ = nets.generate_for_training(g_params, g_batch_stats, no_hints, keys.dropout)
    plain = jax.lax.stop_gradient(plain)
  return hints_lib.training_hints(keys.hints, nets.config.hints, target, lineart, plain)


def discriminator_loss(nets: state_lib.Networks, d_params, d_batch_stats, lineart,
                       fake: jax.Array, target: jax.Array, penalty_rng: jax.Array):
  """D's loss on a batch of fakes (gradients stopped by the caller) and of reals.

  Fakes and reals go through D separately so batch statistics never mix them.

  Returns:
    (loss, aux): aux holds D's updated batch statistics ("stats") and the metrics
    d_adv, d_gp, d_real_acc, d_fake_acc.
  """
  lc = nets.config.loss
  fake_logits, stats = nets.discriminate(d_params, d_batch_stats, lineart, fake)
  real_logits, stats = nets.discriminate(d_params, stats, lineart, target)
  d_adv = losses.d_loss(real_logits, fake_logits, lc.gan)
  gp = losses.gradient_penalty(
      lambda x: nets.discriminate(d_params, stats, lineart, x)[0], target, penalty_rng,
      lc.gradient_penalty)
  real_acc, fake_acc = losses.discriminator_accuracy(real_logits, fake_logits, lc.gan)
  aux = {"stats": stats, "d_adv": d_adv, "d_gp": gp, "d_real_acc": real_acc,
         "d_fake_acc": fake_acc}
  return d_adv + lc.gp_weight * gp, aux


def reconstruction_loss(loss_config, fake: jax.Array, target: jax.Array):
  """G's reconstruction terms: (l1_weight * L1 + mse_weight * MSE [+ chroma_weight *
  chroma L1], {"g_l1", "g_mse"[, "g_chroma"]}); the chroma term only when its weight > 0."""
  terms = {"g_l1": losses.l1_loss(fake, target), "g_mse": losses.mse_loss(fake, target)}
  total = loss_config.l1_weight * terms["g_l1"] + loss_config.mse_weight * terms["g_mse"]
  if loss_config.chroma_weight > 0:
    terms["g_chroma"] = losses.chroma_loss(fake, target)
    total = total + loss_config.chroma_weight * terms["g_chroma"]
  return total, terms


def generator_loss(nets: state_lib.Networks, fake: jax.Array, target: jax.Array, lineart,
                   d_params, d_batch_stats):
  """G's loss on its output `fake`: reconstruction, plus the adversarial term against D
  (`d_params`, as in training; D's statistics are not updated by G's step).

  Returns:
    (loss, terms): g_l1, g_mse and, with a GAN, g_adv.
  """
  lc = nets.config.loss
  total, terms = reconstruction_loss(lc, fake, target)
  if nets.use_gan:
    fake_logits, _ = nets.discriminate(d_params, d_batch_stats, lineart, fake)
    terms["g_adv"] = losses.g_adv_loss(fake_logits, lc.gan)
    total = total + lc.gan_weight * terms["g_adv"]
  return total, terms
