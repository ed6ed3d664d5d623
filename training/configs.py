"""Named training configurations (``nwp-train --config NAME``); flags given on the command
line override them.

* ``ptb-small``: Zaremba, Sutskever & Vinyals 2014, "small" (their Table 1 reports valid
  120.7 / test 114.5): 2 x 200 LSTM, no dropout, uniform init +-0.1, BPTT 20 with state
  carried across windows, batch 20, SGD lr 1 halved each epoch after epoch 4, 13 epochs,
  global-norm clip 5 on the loss summed over time.
* ``ptb-medium``: their "medium" (86.2 / 82.7): 2 x 650, dropout 0.5, init +-0.05, BPTT 35,
  lr 1 divided by 1.2 each epoch after epoch 6, 39 epochs.
* ``ptb-small-tied``: the small size with tied input/output embeddings (Press & Wolf 2017)
  and dropout 0.3.
* ``ptb-5m``: the best setup we know of under 5M parameters for a 90-minute CPU budget: 2 x
  300 LSTM with tied 300-d embeddings (4.45M parameters), dropout 0.4, BPTT 35, SGD lr 1
  multiplied by 0.8 each epoch after epoch 7, 32 epochs (74 minutes on 2 vCPUs with the
  fused recurrent layer: test perplexity 83.89), stopped earlier by
  ``--time-budget-minutes 85`` on a slower machine.
* ``ptb-keyboard``: the ``keyboard`` preset (one CIFG layer, 96-d tied embedding, 1.40M
  parameters; Gboard's shape, Hard et al. 2018) on PTB with Adam 2e-3, BPTT 35, batch 64,
  state carried, stopped by ``--time-budget-minutes 45``.
* ``shakespeare-char``: character-level Tiny Shakespeare, 2 x 256 LSTM, BPTT 100 with
  carried state, Adam 2e-3, clip 5 on the per-character mean loss (char-rnn-like sizes).
"""

_ZAREMBA = dict(corpus="ptb", model="lstm", num_layers=2, optimizer="sgd", learning_rate=1.0,
                clipnorm=5.0, loss_reduction="sum_over_time", carry_state=True)

CONFIGS = {
    "ptb-small": dict(_ZAREMBA, embedding_dim=200, units=200, dropout=0.0, init_scale=0.1,
                      bptt=20, batch_size=20, lr_decay=0.5, decay_after=4, epochs=13),
    "ptb-medium": dict(_ZAREMBA, embedding_dim=650, units=650, dropout=0.5, init_scale=0.05,
                       bptt=35, batch_size=20, lr_decay=1 / 1.2, decay_after=6, epochs=39),
    "ptb-small-tied": dict(_ZAREMBA, model="lstm-tied", embedding_dim=200, units=200,
                           dropout=0.3, init_scale=0.1, bptt=20, batch_size=20, lr_decay=0.5,
                           decay_after=6, epochs=13),
    "ptb-5m": dict(_ZAREMBA, model="lstm-tied", embedding_dim=300, units=300, dropout=0.4,
                   init_scale=0.1, bptt=35, batch_size=20, lr_decay=0.8, decay_after=7,
                   epochs=32, time_budget_minutes=85),
    # The keyboard-sized CIFG model (zoo preset "keyboard", 1.40M parameters) on PTB, within
    # a 45-minute budget on 2 CPU cores.
    "ptb-keyboard": dict(corpus="ptb", model="keyboard", optimizer="adam", learning_rate=2e-3,
                         clipnorm=5.0, loss_reduction="mean", bptt=35, batch_size=64,
                         lr_decay=0.7, decay_after=4, epochs=30, time_budget_minutes=45,
                         carry_state=True),
    "shakespeare-char": dict(corpus="tiny-shakespeare-char", model="lstm", embedding_dim=64,
                             units=256, num_layers=2, dropout=0.1, bptt=100, batch_size=32,
                             optimizer="adam", learning_rate=2e-3, clipnorm=5.0,
                             loss_reduction="mean", lr_decay=0.7, decay_after=3, epochs=8,
                             carry_state=True),
}
