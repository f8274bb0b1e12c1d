"""tf.data input: sources of colour images, their line art, and the training and
evaluation datasets made from them."""
