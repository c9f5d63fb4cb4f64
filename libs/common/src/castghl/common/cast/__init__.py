"""Cast.ph: the SMS API client and its request/response models."""
