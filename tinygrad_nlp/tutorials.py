"""The two tutorials' settings, in one home: the examples' ``--tutorial`` settings, the
training-step benchmark and the op benchmark's shapes all read them from here.

MLM tutorial (French Europarl): batch 128, sequence 20, width 128, 8 heads, 8 pre-norm
layers, feed-forward 512, vocabulary up to 40,000, dropout 0.1, Adam (lr 1e-4, weight
decay 1e-4), 15% of positions masked.

Classifier tutorial (IMDB): width 256, 4 heads, 4 post-norm layers, feed-forward 512,
sequence 256, dropout 0.4, Adam lr 1e-4, 20 epochs, batch 32, 600+600 training and
100+100 test reviews, tokenized with bert-base-uncased's WordPiece vocabulary (30,522).
"""

MLM_TUTORIAL = dict(batch_size=128, seq_len=20, d_model=128, n_heads=8, n_layers=8, d_ff=512, vocab_size=40000,
                    dropout=0.1, optimizer="adam", lr=1e-4, weight_decay=1e-4, mask_prob=0.15)

CLASSIFIER_TUTORIAL = dict(batch_size=32, seq_len=256, d_model=256, n_heads=4, n_layers=4, d_ff=512,
                           vocab_size=30522, dropout=0.4, optimizer="adam", lr=1e-4, weight_decay=0.0, epochs=20,
                           train_per_class=600, test_per_class=100)
