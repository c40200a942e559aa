"""The synthetic multilingual corpus: sentences of local text sources spoken by espeak-ng (and
other offline voices), written as Kaldi data dirs. Import from the module that holds a name:

  normalise.py  languages (LANGS), normalising, filtering, deduplicating and splitting sentences
  sources.py    the text sources (chatterbot, fortunes, django, wordnet, manpages, pydoc),
                sentence_pool, wordfreq_sequences, MissingSourceError
  roff.py       the roff parser behind the man page source
  speakers.py   Speaker, all_speakers, speaker_sets
  speech.py     spoken forms (to_spoken), espeak-ng (synthesize), speak, running synthesis jobs
  generate.py   generate_corpus: plan -> synthesise -> write (CLI: drax/bin/make_synthetic.py)
"""
