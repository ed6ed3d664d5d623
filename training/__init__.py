"""How models learn: corpora, tf.data pipelines and the training command. Depends on zoo."""
