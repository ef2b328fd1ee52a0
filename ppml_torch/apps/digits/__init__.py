"""sklearn's digits trained as a CNN through ``ppml_torch.fit`` (issue 20, item 5).

Data (:mod:`.data`): the 1,797 8x8 images of scikit-learn's digits (no download), pixels
divided by 16, 80/20 split with ``random_state=0`` (1,437 training rows, 360 test rows).  The
training rows are split by rows (horizontally): alice holds the first half (718 images and
their labels), bob the rest (719).  Alice owns the weights and holds the test set.

Model and training (:mod:`.train`): ``Conv2d(1,8,3,p=1)-ReLU-MaxPool2d(2)-Conv2d(8,16,3,p=1)-
ReLU-MaxPool2d(2)-Flatten-Linear(64,10)`` built after ``torch.manual_seed(0)``, cross
entropy, SGD at lr 0.3, batch 32 (44 full batches and the partial one of 29 rows, as torch's
``DataLoader``), 3 epochs, through the graph route.  torch eager reaches 0.90 test accuracy.

Under MPC the weights are secret-shared once (owned by alice) and stay shared for the whole
training: each epoch is one call; the images and labels are put once by their owners.  The
trained weights are revealed once, to alice, who scores them on her test set in plaintext
(the accuracy is hers: only she holds the weights and the test images).

The table (:mod:`.report`): one row per run, as ``ppml-torch digits`` prints it; the
multi-process run (:mod:`.parties`) is the same training with each party in its own process.
"""
