"""Reading media: opening and probing files, decoding audio spans and video windows, container checks, the isolated
decoder process and shard-member / URL reads. The lowest data layer.
"""
