"""The SecretFlow homework, from PyTorch users' side: the breast-cancer MLP trained under MPC.

Data (:mod:`.data`): scikit-learn's breast-cancer set (569 x 30), 80/20 split with
``random_state=42``, split vertically: alice holds features 0-14, bob features 15-29 and the
labels.  By default each owner min-max normalises its own columns (per feature, over all rows,
as the homework normalises before splitting), so nothing about one party's features reaches
the other.  ``normalise="global"`` reproduces the homework's own scaling, one min and max over
the whole matrix, which needs a statistic of both parties' data (test AUC 0.985 vs 0.961 per
feature, plaintext, 10 epochs).

Model and training (:mod:`.train`): the MLP [30, 15, 8, 1] with ReLU defined in torch (starting
from the homework's Flax initial weights), trained by ``ppml_torch.fit`` for 10 epochs of
minibatch SGD: batch 10 and the partial batch of 5 (``fit`` batches like torch's
``DataLoader``; the homework used ``numpy.array_split``), ``nn.MSELoss`` at lr 0.005, the
homework's ``mean((y - pred)**2 / 2)`` at 0.01; the flax route by default (``train.ROUTE``).
The homework's hand-written Flax loop is kept in ``bench/flax_loop.py`` as the benchmark's
reference.

**Fix of the original homework's loss.**  The homework computed that loss with ``y`` of shape
``(n,)`` against predictions of shape ``(n, 1)``, which broadcasts to an ``(n, n)`` matrix:
every prediction was pushed towards every label of the batch.  Here ``y`` is ``(n, 1)``.

Under MPC the weights are secret-shared once (owned by alice) and stay shared for the whole
training: each epoch is one call on the session; the data are put once by their owners.  The
trained weights are revealed once, at the end, to alice (``fit``'s contract).  Test
predictions are computed under MPC (alice's weights, both parties' features) and revealed
only to bob, the label holder, who computes the AUC.

The table (:mod:`.report`): one row per run spec, as ``ppml-torch homework-mlp`` prints it.
"""
