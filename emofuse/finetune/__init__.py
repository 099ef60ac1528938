"""Fine-tuning a Hugging Face encoder end to end with the fusion head (`train --finetune`)."""
