"""Learning from the person's choices (docs/learning.md).

The profile the daemon applies at every fork, one small learner per module (scikit-learn
conventions: hyperparameters in ``__init__``, learned state in ``..._``, ``partial_fit``,
``get_params``/``set_params`` from ``estimator``); no heavy dependencies:

* ``text``     — the words the profile counts, the history before a fork;
* ``cache_lm`` — the cache language model over the person's text;
* ``mixture``  — the cache's weight against the LLM, learned by EM;
* ``choice``   — accept/reject statistics and the choice model over them;
* ``memory``   — the person's earlier writing, read by the model before a document;
* ``profile``  — the composite of them all (``observe``, ``rerank``); ``rerank`` applies it;
* ``persist``  — the profile's file (private, atomic; a bad file is kept aside);
* ``live``     — ``ProfileLearner``, the daemon's learner (daemon/learner.py), and store replays.

The rest reads the store for training: ``history`` (read-only, schema-checked), ``export``
(DPO pairs, SFT text, token-level labels), and the optional LoRA path ``hf`` / ``lora`` /
``adapter_gguf`` (``razvilka[learn]``: torch, transformers, peft, gguf), imported only when
``razvilka learn lora`` runs.
"""
