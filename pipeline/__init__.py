"""voicescrub"""
