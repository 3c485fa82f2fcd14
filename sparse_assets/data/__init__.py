"""Text and data: Korean text processing (Kiwi), corpus sources and cleaning, the record types,
evaluation questions, IDF statistics and the bilingual dictionary."""
