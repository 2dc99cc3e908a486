"""What goes in: records shared by every stage (records), corpora (corpus), question files
(questions) and the built-in demo (demo_data)."""
