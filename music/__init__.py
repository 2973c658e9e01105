"""Music recommendations: interaction data layer, Keras matrix factorisation, genre picks, evaluation.

Why the backend is set here: Keras reads ``KERAS_BACKEND`` once, at its first import, and every
music module (``music.mf`` and ``music.next`` alike) may import keras. Setting it before anything else in
the package keeps the torch backend (TensorFlow crashes beside the CUDA torch build, see
``/docs``). ``setdefault`` leaves an explicit user choice alone.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
