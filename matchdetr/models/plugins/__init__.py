"""models/plugins"""
